// The live load of bench/throughput.py's latency phase: one JSON point per message, streams
// round-robin, produced at a fixed rate by Kafka's own Java client, so that the 2-core
// machine's CPU goes to the broker and the daemon under test (kafka-python at 24k msgs/s took
// about half a core). At 15k msgs/s, once warm, it takes 0.09-0.10 of a core as
// bench/kafka_load.py runs it (serial GC, C1 compiler only); 0.29-0.31 with the JVM's
// default flags and String.format per message.
//
// Usage: PacedProducer BOOTSTRAP TOPIC STREAMS FIRST_POINT LAST_POINT START_MS RATE [WARM_S]
// Messages are those of bench/kafka_load.py messages(): key s%06d, value
// {"stream":"s000012","ts":START_MS+1000*k,"value":50+(k*7+s)%13} for k in [FIRST, LAST).
//
// WARM_S (default 0): first produce the same messages at the same rate for that many seconds
// to TOPIC.warmup, which nothing consumes. A cold JVM spends its first seconds interpreting
// and compiling this loop and the client; on 2 cores those compiler threads took the CPU
// from the daemon under test, whose points then waited up to 2.5 s (p99 980 ms against
// 241 ms with a warm producer, same rate, same machine).
//
// Prints "sent N in S s" (the measured part only) on success; exits 1 if any send failed.
import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class PacedProducer {
    private static final AtomicLong failed = new AtomicLong();
    private static final AtomicReference<Exception> error = new AtomicReference<>();

    public static void main(String[] args) throws Exception {
        if (args.length != 7 && args.length != 8) {
            System.err.println(
                "usage: PacedProducer BOOTSTRAP TOPIC STREAMS FIRST LAST START_MS RATE [WARM_S]");
            System.exit(2);
        }
        String topic = args[1];
        int streams = Integer.parseInt(args[2]);
        int first = Integer.parseInt(args[3]);
        int last = Integer.parseInt(args[4]);
        long startMs = Long.parseLong(args[5]);
        double rate = Double.parseDouble(args[6]);
        double warmS = args.length == 8 ? Double.parseDouble(args[7]) : 0.0;
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("acks", "1");
        p.put("linger.ms", "5");
        p.put("batch.size", "1048576");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        long sent;
        double secs;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            if (warmS > 0) {
                String warm = topic + ".warmup";
                producer.partitionsFor(warm);
                int points = (int) Math.ceil(warmS * rate / streams);
                paced(producer, warm, streams, 0, points, startMs, rate);
                producer.flush();
            }
            producer.partitionsFor(topic);  // metadata first: pacing starts with the first send
            long t0 = System.nanoTime();
            sent = paced(producer, topic, streams, first, last, startMs, rate);
            producer.flush();
            secs = (System.nanoTime() - t0) / 1e9;
        }
        if (failed.get() > 0) {
            System.err.println(failed.get() + " sends failed: " + error.get());
            System.exit(1);
        }
        System.out.printf("sent %d in %.3f s%n", sent, secs);
    }

    /** Points first..last-1 of every stream to topic at rate messages/s; returns the count.
     *  Keys are built once and values with a StringBuilder rather than String.format per
     *  message. The producer copies key and value into its batch inside send(), so the key
     *  arrays are reused. */
    private static long paced(KafkaProducer<byte[], byte[]> producer, String topic, int streams,
                              int first, int last, long startMs, double rate)
            throws InterruptedException {
        String[] names = new String[streams];
        byte[][] keys = new byte[streams][];
        for (int s = 0; s < streams; s++) {
            names[s] = String.format(Locale.ROOT, "s%06d", s);
            keys[s] = names[s].getBytes(StandardCharsets.US_ASCII);
        }
        StringBuilder value = new StringBuilder(64);
        long sent = 0;
        long t0 = System.nanoTime();
        for (int k = first; k < last; k++) {
            long ts = startMs + 1000L * k;
            for (int s = 0; s < streams; s++) {
                // 50 + (k*7+s) % 13 is a whole number: "%.4f" of it is the number and ".0000".
                value.setLength(0);
                value.append("{\"stream\":\"").append(names[s]).append("\",\"ts\":").append(ts)
                    .append(",\"value\":").append(50 + (k * 7 + s) % 13).append(".0000}");
                byte[] v = value.toString().getBytes(StandardCharsets.US_ASCII);
                producer.send(new ProducerRecord<>(topic, keys[s], v),
                    (md, e) -> { if (e != null) { failed.incrementAndGet(); error.set(e); } });
                sent++;
                long aheadNs = (long) (sent / rate * 1e9) - (System.nanoTime() - t0);
                if (aheadNs > 5_000_000L) {
                    Thread.sleep(aheadNs / 1_000_000L, (int) (aheadNs % 1_000_000L));
                }
            }
        }
        return sent;
    }
}
