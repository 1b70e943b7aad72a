// The live load of bench/throughput.py's latency phase: one JSON point per message, streams
// round-robin, produced at a fixed rate by Kafka's own Java client, so that the load
// generator costs a few percent of a core and the 2-core machine's CPU goes to the broker and
// the daemon under test (kafka-python at 24k msgs/s took about half a core).
//
// Usage: PacedProducer BOOTSTRAP TOPIC STREAMS FIRST_POINT LAST_POINT START_MS RATE
// Messages are those of bench/kafka_load.py messages(): key s%06d, value
// {"stream":"s000012","ts":START_MS+1000*k,"value":50+(k*7+s)%13} for k in [FIRST, LAST).
// Prints "sent N in S s" on success; exits 1 if any send failed.
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class PacedProducer {
    public static void main(String[] args) throws Exception {
        if (args.length != 7) {
            System.err.println("usage: PacedProducer BOOTSTRAP TOPIC STREAMS FIRST LAST START_MS RATE");
            System.exit(2);
        }
        String topic = args[1];
        int streams = Integer.parseInt(args[2]);
        int first = Integer.parseInt(args[3]);
        int last = Integer.parseInt(args[4]);
        long startMs = Long.parseLong(args[5]);
        double rate = Double.parseDouble(args[6]);
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("acks", "1");
        p.put("linger.ms", "5");
        p.put("batch.size", "1048576");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        AtomicLong failed = new AtomicLong();
        AtomicReference<Exception> error = new AtomicReference<>();
        long sent = 0;
        long t0;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            producer.partitionsFor(topic);  // metadata first: pacing starts with the first send
            t0 = System.nanoTime();
            for (int k = first; k < last; k++) {
                long ts = startMs + 1000L * k;
                for (int s = 0; s < streams; s++) {
                    String key = String.format(Locale.ROOT, "s%06d", s);
                    String value = String.format(Locale.ROOT,
                        "{\"stream\":\"%s\",\"ts\":%d,\"value\":%.4f}", key, ts,
                        50.0 + (k * 7 + s) % 13);
                    producer.send(new ProducerRecord<>(topic, key.getBytes(), value.getBytes()),
                        (md, e) -> { if (e != null) { failed.incrementAndGet(); error.set(e); } });
                    sent++;
                    long aheadNs = (long) (sent / rate * 1e9) - (System.nanoTime() - t0);
                    if (aheadNs > 5_000_000L) {
                        Thread.sleep(aheadNs / 1_000_000L, (int) (aheadNs % 1_000_000L));
                    }
                }
            }
            producer.flush();
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        if (failed.get() > 0) {
            System.err.println(failed.get() + " sends failed: " + error.get());
            System.exit(1);
        }
        System.out.printf("sent %d in %.3f s%n", sent, secs);
    }
}
