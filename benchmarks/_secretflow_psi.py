"""One party of SecretFlow's two-party PSI, for ``bench_psi.py`` (run by the benchmark's ``spu`` venv).

    python _secretflow_psi.py RANK PROTOCOL CURVE RECEIVER_ONLY IN_CSV OUT_CSV PORT0 PORT1

Both parties run on this machine, each in its own process, linked by SecretFlow's own
brpc link over TCP on 127.0.0.1 (rank ``r`` listens on ``PORTr``). ``PROTOCOL`` is
``ECDH`` (``CURVE`` e.g. ``CURVE_25519``) or ``RR22``; ``RECEIVER_ONLY`` 1 gives the
result to rank 0 only, 0 to both. Reads one column ``id`` with unique keys and writes the
intersection aligned (sorted), as ``spu.psi.psi_execute`` does by default. Prints one
line ``RESULT {json}``: the counts, the wall and CPU seconds inside ``psi_execute`` and
this process's peak resident memory. Nothing of fedscore is imported here.
"""

import json
import resource
import sys
import time


def peak_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    rank, protocol, curve, receiver_only = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    in_csv, out_csv, ports = sys.argv[5], sys.argv[6], [int(p) for p in sys.argv[7:9]]

    import spu.libspu as libspu
    from spu import psi

    desc = libspu.link.Desc()
    desc.id = "fedscore-bench-psi"
    for r, port in enumerate(ports):
        desc.add_party(f"party{r}", f"127.0.0.1:{port}")
    desc.recv_timeout_ms = 3600 * 1000
    desc.connect_retry_times = 120
    desc.connect_retry_interval_ms = 500
    desc.http_timeout_ms = 600 * 1000
    link = libspu.link.create_brpc(desc, rank)
    config = psi.PsiExecuteConfig(
        protocol_conf=psi.PsiProtocolConfig(
            protocol=psi.parse_protocol(f"PROTOCOL_{protocol}"),
            receiver_rank=0,
            broadcast_result=not receiver_only,
            ecdh_params=psi.EcdhParams(curve=psi.parse_curve_type(curve)),
        ),
        input_params=psi.InputParams(type=psi.SourceType.SOURCE_TYPE_FILE_CSV, path=in_csv,
                                     selected_keys=["id"], keys_unique=True),
        output_params=psi.OutputParams(type=psi.SourceType.SOURCE_TYPE_FILE_CSV, path=out_csv),
    )
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    report = psi.psi_execute(config, link)
    wall, cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
    link.barrier()
    link.stop_link()
    print("RESULT " + json.dumps({"rank": rank, "original": report.original_count,
                                  "intersection": report.intersection_count, "inside_wall_s": round(wall, 3),
                                  "inside_cpu_s": round(cpu, 3), "peak_mib": round(peak_mib(), 1)}), flush=True)


if __name__ == "__main__":
    main()
