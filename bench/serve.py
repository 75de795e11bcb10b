"""Serving benchmark: what the web path costs over a raw SavedModel call, and throughput.

Run by hand (``python bench/serve.py --serving-root DIR``), not by the tests. It starts
the real model server (``python -m serving``, gunicorn) and the web app
(``python -m webapp``, gunicorn) on free loopback ports, then prints:

* p50/p99 latency of a raw in-process SavedModel call (``serving_default`` and ``explain``)
  on one image, and of the same image through ``POST /api/predict`` (upload -> checks ->
  REST -> model server -> ``explain`` -> overlay-free JSON) with one client;
* requests/s and errors with 1 and 50 concurrent clients, each phase ``--seconds`` long,
  against the web app and against the model server's ``:predict`` directly.

The load generator shares the machine's cores with both servers, so the figures are a
floor for a machine where clients run elsewhere.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import requests

DEFAULT_SECONDS = 20.0
LONG_SECONDS = 60.0
CONCURRENCY = (1, 50)
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


def percentile(values: List[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(pct / 100.0 * (len(ordered) - 1)))))
    return ordered[index]


def summary(name: str, latencies: List[float]) -> str:
    p50, p99 = (percentile(latencies, p) * MS for p in PERCENTILES)
    return f"{name:<48} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   (n={len(latencies)})"


def newest_version(serving_root: str, model: str) -> str:
    base = os.path.join(serving_root, model)
    versions = [v for v in os.listdir(base) if v.isdigit() and os.path.isfile(os.path.join(base, v, "saved_model.pb"))]
    if not versions:
        raise SystemExit(f"no version with saved_model.pb under {base}")
    return os.path.join(base, max(versions, key=int))


def raw_latencies(path: str, image: bytes, signature: str) -> List[float]:
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
def model_and_web_servers(serving_root: str, model: str, web_env: Optional[Dict[str, str]] = None
                          ) -> Iterator[Tuple[str, str]]:
    """The model server and the web app in front of it, as `make serve` / `make web` start
    them, each on a free port; yields (model server URL, web app URL) once both answer."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    model_port, web_port = free_port(), free_port()
    model_url, web_url = f"http://127.0.0.1:{model_port}", f"http://127.0.0.1:{web_port}"
    log = open(os.devnull, "w")
    servers = [
        subprocess.Popen([sys.executable, "-m", "serving", "--serving-root", serving_root, "--model-name",
                          model, "--port", str(model_port)], env=env, stdout=log, stderr=log),
        subprocess.Popen([sys.executable, "-m", "webapp", "--port", str(web_port), "--server", model_url,
                          "--model", model], env=dict(env, **(web_env or {})), stdout=log, stderr=log),
    ]
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


def load(call: Callable[[requests.Session], object], clients: int, seconds: float) -> Dict[str, object]:
    """Runs ``call`` in ``clients`` threads for ``seconds``; counts answers, errors, latencies.

    ``call`` returns True for a good answer, else a short description of what went wrong.
    """
    stop = time.time() + seconds
    latencies: List[float] = []
    errors = [0]
    kinds: Dict[str, int] = {}
    lock = threading.Lock()

    def worker():
        session = requests.Session()
        while time.time() < stop:
            started = time.perf_counter()
            try:
                ok = call(session)
            except requests.RequestException as err:
                ok = type(err).__name__
            elapsed = time.perf_counter() - started
            with lock:
                if ok is True:
                    latencies.append(elapsed)
                else:
                    errors[0] += 1
                    kinds[str(ok)[:120]] = kinds.get(str(ok)[:120], 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.time() - started
    return {"rps": len(latencies) / wall, "errors": errors[0], "latencies": latencies, "n": len(latencies),
            "kinds": kinds}


def default_image() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((50, 50), 64).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--serving-root", required=True)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--image", default=None, help="PNG/JPEG to send (default: a 50x50 noise patch)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="length of each load phase")
    parser.add_argument("--long", action="store_true", help=f"{LONG_SECONDS:.0f} s phases")
    args = parser.parse_args(argv)
    seconds = LONG_SECONDS if args.long else args.seconds
    image = open(args.image, "rb").read() if args.image else default_image()
    path = newest_version(args.serving_root, args.model)

    print(f"model {args.model} at {path}; image {len(image)} bytes; {os.cpu_count()} CPU cores; "
          f"{seconds:.0f} s per load phase")
    raw_default = raw_latencies(path, image, "serving_default")
    raw_explain = raw_latencies(path, image, "explain")

    with model_and_web_servers(args.serving_root, args.model) as (model_url, web_url):
        body = {"instances": [{"b64": base64.b64encode(image).decode("ascii")}]}

        def web_call(session: requests.Session) -> bool:
            response = session.post(f"{web_url}/api/predict", files={"file": ("patch.png", image, "image/png")},
                                    timeout=60)
            return True if response.status_code == 200 else f"{response.status_code} {response.text[:100]}"

        def server_call(session: requests.Session) -> bool:
            response = session.post(f"{model_url}/v1/models/{args.model}:predict", json=body, timeout=60)
            return True if response.status_code == 200 else f"{response.status_code} {response.text[:100]}"

        for _ in range(WARMUP_CALLS):
            web_call(requests.Session())
        results = {}
        for target, call in (("web /api/predict (explain)", web_call),
                             ("model server :predict (serving_default)", server_call)):
            for clients in CONCURRENCY:
                results[(target, clients)] = load(call, clients, seconds)
        print()
        print("latency, one image, one client")
        print(summary("raw SavedModel serving_default (in-process)", raw_default))
        print(summary("raw SavedModel explain (in-process)", raw_explain))
        print(summary("web upload -> prediction (POST /api/predict)", results[("web /api/predict (explain)", 1)]["latencies"]))
        print(summary("model server REST :predict", results[("model server :predict (serving_default)", 1)]["latencies"]))
        print()
        print("throughput")
        for (target, clients), result in results.items():
            p50, p99 = (percentile(result["latencies"], p) * MS for p in PERCENTILES)
            print(f"{target:<42} {clients:>3} clients: {result['rps']:8.1f} req/s   errors {result['errors']:>4}   "
                  f"p50 {p50:8.1f} ms   p99 {p99:8.1f} ms   (n={result['n']})")
            for kind, count in sorted(result["kinds"].items()):
                print(f"    {count} x {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
