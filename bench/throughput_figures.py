"""The throughput benchmark's figures, with their targets (issue 7), from its result dict."""

from __future__ import annotations

from typing import Any

from bench import report

COMMAND = "python -m bench throughput"
# (results key, label, share of the daemon's max rate at 1,000 streams, predictions topic on)
LATENCY_RUNS = (
    ("latency", "alerts only, 1/2 max", 0.5, False),  # the target's condition
    ("latency_quarter", "alerts only, 1/4 max", 0.25, False),
    ("latency_predictions", "+predictions, 1/4 max", 0.25, True),
)


def figures(res: dict[str, Any]) -> list[report.Figure]:
    figs: list[report.Figure] = []
    b = "throughput"
    runs = {r["streams"]: r for r in res["runs"]}
    for n, r in runs.items():
        cmd = COMMAND
        state = "" if r["state_checkpoint"] else ", state off"
        figs.append(
            report.figure(
                b, f"daemon @{n} streams{state}", r["daemon_points_per_s"], "points/s", cmd
            )
        )
        if "daemon_points_per_s_state_off" in r:
            v = r["daemon_points_per_s_state_off"]
            figs.append(report.figure(b, f"daemon @{n} streams, state off", v, "points/s", cmd))
        if "daemon_points_per_s_thread" in r:
            v = r["daemon_points_per_s_thread"]
            label = f"daemon @{n} streams, inference in-process (thread)"
            figs.append(report.figure(b, label, v, "points/s", cmd))
        if "bare_points_per_s" in r:
            figs.append(
                report.figure(
                    b, f"bare consumer @{n} streams", r["bare_points_per_s"], "points/s", cmd
                )
            )
            target = report.at_least(r["ratio"], 0.5) if n == 1000 else None
            figs.append(report.figure(b, f"daemon/bare @{n} streams", r["ratio"], "", cmd, target))
        if "bare_points_per_s_lstmad_reader" in r:
            v = r["bare_points_per_s_lstmad_reader"]
            label = f"bare consumer @{n} streams, lstmad's record reader"
            figs.append(report.figure(b, label, v, "points/s", cmd))
        figs.append(
            report.figure(b, f"daemon RSS @{n} streams", r["rss_bytes"] / 2**20, "MiB", cmd)
        )
    if "per_stream_rss_bytes" in res:
        v = res["per_stream_rss_bytes"]
        figs.append(
            report.figure(
                b,
                f"marginal RSS per stream ({res['per_stream_rss_between']}, +-fixed-cost noise)",
                v,
                "bytes",
                COMMAND,
            )
        )
    if "rss_per_stream_total_bytes" in res:
        big = max(runs)
        # The target's literal reading: the service's whole resident set over its streams,
        # each physical page once (the daemon and its inference process share libraries);
        # the plain sum of the two RSS counts shared pages twice. Without the privilege to
        # read page frames, the sum carries the target.
        exact = "resident_per_stream_total_bytes" in res
        v = res["resident_per_stream_total_bytes" if exact else "rss_per_stream_total_bytes"]
        target = report.at_most(v, 2048) if big >= 100_000 else None
        label = f"resident set / streams @{big} (daemon + inference process, pages once)"
        if exact:
            figs.append(report.figure(b, label, v, "bytes", COMMAND, target))
        v = res["rss_per_stream_total_bytes"]
        label = f"RSS sum / streams @{big} (shared pages twice)"
        figs.append(report.figure(b, label, v, "bytes", COMMAND, None if exact else target))
        if "pss_per_stream_total_bytes" in res:
            v = res["pss_per_stream_total_bytes"]
            label = f"PSS / streams @{big}"
            figs.append(report.figure(b, label, v, "bytes", COMMAND))
        if "rss_per_stream_total_bytes_thread" in res:
            v = res["rss_per_stream_total_bytes_thread"]
            label = f"RSS / streams @{big}, inference in-process (thread)"
            figs.append(report.figure(b, label, v, "bytes", COMMAND))
    for key, label, _, _ in LATENCY_RUNS:
        if key not in res:
            continue
        lat = res[key]
        rate = lat["achieved_rate"]
        figs.append(report.figure(b, f"live rate, {label}", rate, "points/s", COMMAND))
        figs.append(
            report.figure(b, f"p50 produce->output, {label}", lat["p50_s"] * 1e3, "ms", COMMAND)
        )
        p99 = lat["p99_s"] * 1000
        target = report.at_most(p99, 100) if key == "latency" else None
        figs.append(report.figure(b, f"p99 produce->output, {label}", p99, "ms", COMMAND, target))
        figs.append(
            report.figure(b, f"share <= 100 ms, {label}", lat["share_within_100ms"], "", COMMAND)
        )
        # What the 2 cores were doing meanwhile: the daemon's loop process, its inference
        # process, the broker, the load generator, and every process (the machine).
        for group, cores in lat.get("cpu_cores", {}).items():
            figs.append(report.figure(b, f"cores used: {group}, {label}", cores, "", COMMAND))
    return figs
