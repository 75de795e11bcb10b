"""Serving benchmark: the web path's cost over a raw SavedModel call, and throughput under
load from locust (a kept load tool) at 1, 10 and 50 users, with and without batching.

    make locust   # once: locust in its own venv (.venv-locust; gevent stays out of TF's)
    python bench/serve.py --serving-root DIR [--seconds 20] [--users 1 10 50]

Run by hand, not by the tests. For each model-server setting (default: ``--no-batching``
and the default batching) it starts the real model server (``python -m serving``,
gunicorn) and the web app (``python -m webapp``) on free loopback ports, then runs
``locust --headless`` (bench/locustfile.py; closed loop, no think time) for each target
(the model server's REST ``:predict``, the web app's ``POST /api/predict``) and user count,
and prints p50/p99, requests/s and failures from locust's CSV, and where the CPU went:
CPU seconds per answered request of the model server, the web app and locust itself
(psutil, each phase). Before that, in process: the latency of a raw SavedModel call and
the model's own throughput at batch sizes 1, 8 and 32 (the ceiling for any server on
this machine).

The load generator shares the machine's cores with both servers, so the figures are a
floor for a machine where clients run elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import requests

DEFAULT_SECONDS = 20.0
USERS = (1, 10, 50)
SERVER_SETTINGS = ("--no-batching", "")  # model-server flags per setting; "" = its defaults
CEILING_BATCHES = (1, 8, 32)
CEILING_SECONDS = 8.0
LOCUST = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv-locust", "bin", "locust"
)
LOCUSTFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locustfile.py")
TARGETS = {"model server :predict": "ModelServerUser", "web /api/predict": "WebUser"}
RAW_CALLS = 200
WARMUP_CALLS = 5
STARTUP_TIMEOUT_S = 180.0
PERCENTILES = (50, 99)
MS = 1000.0
DEFAULT_MODEL = "breastdx-idc"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(pct / 100.0 * (len(ordered) - 1)))))
    return ordered[index]


def summary(name: str, latencies: list[float]) -> str:
    p50, p99 = (percentile(latencies, p) * MS for p in PERCENTILES)
    return f"{name:<48} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   (n={len(latencies)})"


def newest_version(serving_root: str, model: str) -> str:
    base = os.path.join(serving_root, model)
    versions = [
        v
        for v in os.listdir(base)
        if v.isdigit() and os.path.isfile(os.path.join(base, v, "saved_model.pb"))
    ]
    if not versions:
        raise SystemExit(f"no version with saved_model.pb under {base}")
    return os.path.join(base, max(versions, key=int))


def raw_latencies(path: str, image: bytes, signature: str) -> list[float]:
    import tensorflow as tf

    function = tf.saved_model.load(path).signatures[signature]
    tensor = tf.constant([image])
    for _ in range(WARMUP_CALLS):
        function(image_bytes=tensor)
    latencies = []
    for _ in range(RAW_CALLS):
        started = time.perf_counter()
        outputs = function(image_bytes=tensor)
        {name: value.numpy() for name, value in outputs.items()}
        latencies.append(time.perf_counter() - started)
    return latencies


def wait_until_up(url: str, process: subprocess.Popen, needle: str = "") -> None:
    """Waits until ``url`` answers 200 with ``needle`` in its body (the model: ``AVAILABLE``)."""
    deadline = time.time() + STARTUP_TIMEOUT_S
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server for {url} exited with {process.returncode}")
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == 200 and needle in response.text:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not come up in {STARTUP_TIMEOUT_S:.0f} s")


@contextlib.contextmanager
def model_and_web_servers(
    serving_root: str,
    model: str,
    web_env: dict[str, str] | None = None,
    server_args: Sequence[str] = (),
    processes: list | None = None,
) -> Iterator[tuple[str, str]]:
    """The model server and the web app in front of it, as `make serve` / `make web` start
    them, each on a free port; yields (model server URL, web app URL) once both answer.
    ``server_args``: extra model-server flags (``--no-batching``); ``processes``: a list
    that receives the two Popen objects (model server, web app)."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    model_port, web_port = free_port(), free_port()
    model_url, web_url = f"http://127.0.0.1:{model_port}", f"http://127.0.0.1:{web_port}"
    log = open(os.devnull, "w")
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving",
                "--serving-root",
                serving_root,
                "--model-name",
                model,
                "--port",
                str(model_port),
                *server_args,
            ],
            env=env,
            stdout=log,
            stderr=log,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webapp",
                "--port",
                str(web_port),
                "--server",
                model_url,
                "--model",
                model,
            ],
            env=dict(env, **(web_env or {})),
            stdout=log,
            stderr=log,
        ),
    ]
    if processes is not None:
        processes.extend(servers)
    try:
        wait_until_up(f"{model_url}/v1/models/{model}", servers[0], "AVAILABLE")
        wait_until_up(f"{web_url}/healthz", servers[1])
        yield model_url, web_url
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        log.close()


def ceiling(
    path: str,
    image: bytes,
    batches: Sequence[int] = CEILING_BATCHES,
    seconds: float = CEILING_SECONDS,
) -> dict[int, float]:
    """Images/s of in-process ``serving_default`` calls at each batch size: what the model
    alone gives on this machine, before any HTTP, JSON or client."""
    import tensorflow as tf

    function = tf.saved_model.load(path).signatures["serving_default"]
    rates = {}
    for size in batches:
        tensor = tf.constant([image] * size)
        function(image_bytes=tensor)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            {name: value.numpy() for name, value in function(image_bytes=tensor).items()}
            calls += 1
        rates[size] = calls * size / (time.perf_counter() - started)
    return rates


def cpu_seconds(processes) -> float:
    """User + system CPU seconds of the processes and their children so far."""
    import psutil

    total = 0.0
    for process in processes:
        try:
            proc = psutil.Process(process.pid if hasattr(process, "pid") else process)
            for p in [proc] + proc.children(recursive=True):
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            pass
    return total


def read_locust_csv(prefix: str) -> dict[str, float]:
    """The Aggregated row of locust's ``<prefix>_stats.csv``."""
    import csv

    with open(f"{prefix}_stats.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
    if not rows:
        raise SystemExit(f"no Aggregated row in {prefix}_stats.csv")
    row = rows[0]
    number = lambda key: float(row[key]) if row[key] not in ("", "N/A") else float("nan")  # noqa: E731
    return {
        "requests": number("Request Count"),
        "failures": number("Failure Count"),
        "p50_ms": number("50%"),
        "p99_ms": number("99%"),
        "rps": number("Requests/s"),
    }


def run_locust(
    user_class: str,
    host: str,
    users: int,
    seconds: float,
    image_path: str,
    model: str,
    out_dir: str,
    servers: Sequence[subprocess.Popen],
) -> dict[str, float]:
    """One headless, bounded locust run; returns locust's aggregate figures and the CPU
    seconds the model server, the web app and locust spent during it."""
    if not os.path.exists(LOCUST):
        raise SystemExit(f"{LOCUST} missing: run `make locust` first")
    prefix = os.path.join(out_dir, f"{user_class}-{users}")
    command = [
        LOCUST,
        "-f",
        LOCUSTFILE,
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds:.0f}s",
        "--host",
        host,
        "--csv",
        prefix,
        "--only-summary",
        "--stop-timeout",
        "30",
        "--loglevel",
        "WARNING",
        user_class,
    ]
    env = dict(os.environ, BENCH_IMAGE=image_path, BENCH_MODEL=model)
    before = [cpu_seconds([s]) for s in servers]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=open(prefix + ".log", "w")
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    after = [cpu_seconds([s]) for s in servers]
    if process.returncode not in (0, 1):  # 1: some requests failed (counted below)
        raise SystemExit(f"locust exited with {process.returncode}: see {prefix}.log")
    result = read_locust_csv(prefix)
    result.update(
        cpu_model=after[0] - before[0],
        cpu_web=after[1] - before[1],
        cpu_locust=usage.ru_utime + usage.ru_stime,
        seconds=seconds,
    )
    return result


def default_image() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((50, 50), 64).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def cpu_table_row(target: str, setting: str, users: int, r: dict[str, float]) -> str:
    answered = max(1.0, r["requests"] - r["failures"])
    per = lambda cpu: cpu / answered * MS  # noqa: E731
    busy = (r["cpu_model"] + r["cpu_web"] + r["cpu_locust"]) / r["seconds"]
    return (
        f"| {target} | {setting} | {users} | {per(r['cpu_model']):.1f} | {per(r['cpu_web']):.1f} | "
        f"{per(r['cpu_locust']):.1f} | {busy:.2f} |"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--serving-root", required=True)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument(
        "--image", default=None, help="PNG/JPEG to send (default: a 50x50 noise patch)"
    )
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS, help="length of each locust run"
    )
    parser.add_argument("--users", type=int, nargs="+", default=list(USERS))
    parser.add_argument(
        "--settings",
        nargs="+",
        default=list(SERVER_SETTINGS),
        help="model-server flags per setting ('' = defaults, batching on)",
    )
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument(
        "--out", default=None, help="folder for locust's CSVs (default: a temporary one)"
    )
    parser.add_argument(
        "--no-raw", action="store_true", help="skip the in-process latency and ceiling"
    )
    args = parser.parse_args(argv)
    import tempfile

    out_dir = args.out or tempfile.mkdtemp(prefix="breastdx-serve-bench-")
    os.makedirs(out_dir, exist_ok=True)
    image = open(args.image, "rb").read() if args.image else default_image()
    image_path = os.path.join(out_dir, "image.png")
    with open(image_path, "wb") as handle:
        handle.write(image)
    path = newest_version(args.serving_root, args.model)
    print(
        f"model {args.model} at {path}; image {len(image)} bytes; {os.cpu_count()} CPU cores; "
        f"{args.seconds:.0f} s per locust run; load average before {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if not args.no_raw:
        raw_default = raw_latencies(path, image, "serving_default")
        raw_explain = raw_latencies(path, image, "explain")
        rates = ceiling(path, image)
        print("\nlatency, one image, one caller, in process")
        print(summary("raw SavedModel serving_default", raw_default))
        print(summary("raw SavedModel explain", raw_explain))
        print("\nthe model alone, in process (serving_default):")
        for size, rate in rates.items():
            print(f"  batch {size:>3}: {rate:7.1f} images/s")

    results = {}
    for setting in args.settings:
        servers: list = []
        with model_and_web_servers(
            args.serving_root, args.model, server_args=setting.split(), processes=servers
        ) as (model_url, web_url):
            hosts = {"model server :predict": model_url, "web /api/predict": web_url}
            for target in args.targets:
                run_locust(
                    TARGETS[target], hosts[target], 1, 3, image_path, args.model, out_dir, servers
                )  # warm-up
                for users in args.users:
                    results[(target, setting, users)] = run_locust(
                        TARGETS[target],
                        hosts[target],
                        users,
                        args.seconds,
                        image_path,
                        args.model,
                        out_dir,
                        servers,
                    )
                    r = results[(target, setting, users)]
                    print(
                        f"  {target} [{setting or 'batching (defaults)'}] {users} users: {r['rps']:.1f} req/s",
                        flush=True,
                    )
    print(
        f"\nlocust {args.seconds:.0f} s per run, closed loop; load average after {os.getloadavg()[0]:.2f}"
    )
    print("| target | model server | users | p50 | p99 | req/s | vs 1 user | failures |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (target, setting, users), r in results.items():
        one = results.get((target, setting, 1), {}).get("rps") or float("nan")
        print(
            f"| {target} | {setting or 'batching (defaults)'} | {users} | {r['p50_ms']:.0f} ms | "
            f"{r['p99_ms']:.0f} ms | {r['rps']:.1f} | {r['rps'] / one:.2f}x | "
            f"{r['failures']:.0f} of {r['requests']:.0f} |"
        )
    print(
        "\nwhere the CPU went: CPU ms per answered request, and cores busy (of the machine's "
        f"{os.cpu_count()})"
    )
    print("| target | model server | users | model server | web app | locust | cores busy |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (target, setting, users), r in results.items():
        print(cpu_table_row(target, setting or "batching (defaults)", users, r))
    print(f"\nlocust CSVs in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
