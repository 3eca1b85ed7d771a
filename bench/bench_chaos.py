"""Load with faults: concurrent clients while servers are killed (issue 9, item 2).

Run from the repository root after the README's install command:

    python bench/bench_chaos.py [--clients 64] [--seconds 60] [--calm 20] [--kill-every 2] [--json FILE]

One served hub (`python -m hub serve`), 10 stdio echo servers (`bench/servers/echo_stdlib.py`) in
3 tenants: `victim` (4 servers), `calm1` and `calm2` (3 each). `--clients` threads call `echo` over
REST (keep-alive connections) on every server in turn, first for `--calm` seconds without faults,
then for `--seconds` while a chaos loop SIGKILLs a random `victim` server every `--kill-every`
seconds. Counted: calls sent; answered successfully; answered 502 (in flight on a killed server,
the only failure allowed); answered 409 (the server was restarting: refused at once); anything
else (must be 0); hung past 30 s (must be 0); tracebacks in the hub's log (must be 0). The calm
tenants' p99 during chaos against their p99 without (target <= 1.5x). Then every killed server
must be `running` again. The hub runs with the default supervision settings: a server killed more
than `max_retries` times in a row is `failed` and retried ever less often (up to `backoff_max`),
so the wait for it is bounded by the next retry its status announces (`retry_at`), plus 60 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from _common import marked, percentiles, served_hub, write_hub_config

ROOT = Path(__file__).resolve().parent.parent
ECHO_STDLIB = str(ROOT / "bench" / "servers" / "echo_stdlib.py")
LAYOUT = {"victim": 4, "calm1": 3, "calm2": 3}
HUNG_AFTER = 30.0


class Tally:
    """What the clients saw, per phase (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (phase, outcome); "victim"/"calm" prefix
        self.latency: dict[tuple[str, str], list[float]] = {}  # (phase, tenant) -> seconds (successes)
        self.examples: dict[str, str] = {}  # an unexpected outcome -> the first answer's body seen

    def add(self, phase: str, tenant: str, outcome: str, seconds: float) -> None:
        with self.lock:
            self.outcomes[(phase, f"{'victim' if tenant == 'victim' else 'calm'} {outcome}")] += 1
            if outcome == "ok":
                self.latency.setdefault((phase, tenant), []).append(seconds)


def client(host: str, port: int, targets: list[tuple[str, str]], phase: list[str], tally: Tally) -> None:
    """One client thread: calls round-robin until the phase is "stop"."""
    connection = http.client.HTTPConnection(host, port, timeout=HUNG_AFTER)
    body = json.dumps({"text": "chaos"})
    index = random.randrange(len(targets))
    while phase[0] != "stop":
        tenant, server = targets[index % len(targets)]
        index += 1
        current = phase[0]
        began = time.perf_counter()
        try:
            connection.request(
                "POST",
                f"/api/tools/{server}.echo?tenant={tenant}",
                body,
                {"Content-Type": "application/json"},
            )
            answer = connection.getresponse()
            data = json.loads(answer.read())
            status = answer.status
        except TimeoutError:
            tally.add(current, tenant, "hung", time.perf_counter() - began)
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=HUNG_AFTER)
            continue
        except (OSError, http.client.HTTPException, ValueError):
            tally.add(current, tenant, "transport error", time.perf_counter() - began)
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=HUNG_AFTER)
            continue
        seconds = time.perf_counter() - began
        if status == 200 and data.get("content", [{}])[0].get("text") == "chaos":
            outcome = "ok"
        elif status == 502:
            outcome = "502 upstream"
        elif status == 409:
            outcome = "409 restarting"
        else:
            outcome = f"other {status}"
            with tally.lock:
                tally.examples.setdefault(f"{tenant} {outcome}", json.dumps(data)[:300])
        tally.add(current, tenant, outcome, seconds)
    connection.close()


def get(host: str, port: int, path: str) -> Any:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of chaos")
    parser.add_argument("--calm", type=float, default=20.0, help="seconds of load without faults first")
    parser.add_argument("--kill-every", type=float, default=2.0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = chaos(args.clients, args.seconds, args.calm, args.kill_every)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def chaos(clients: int, seconds: float, calm: float, kill_every: float) -> dict[str, Any]:
    """Run the benchmark, print its figures, and return them (the test suite runs a short one)."""
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{clients} clients, {calm:.0f} s calm then {seconds:.0f} s of chaos"
    )
    tag = f"bench-chaos-{uuid.uuid4().hex[:12]}"
    tenants = {
        tenant: {
            "servers": {
                f"s{i}": {"command": "python", "args": ["-S", ECHO_STDLIB, tag], "protocol": "legacy"}
                for i in range(count)
            }
        }
        for tenant, count in LAYOUT.items()
    }
    targets = [(t, f"s{i}") for t, count in LAYOUT.items() for i in range(count)]
    tally, phase, kills = Tally(), ["calm"], 0
    with tempfile.TemporaryDirectory() as tmp:
        config = write_hub_config(
            Path(tmp) / "hub.yaml",
            tenants,
            f"{tmp}/data",
            auto_start=True,
        )
        log_path = Path(tmp) / "hub.log"
        with log_path.open("w") as log, served_hub(config, stderr=log) as (hub, url):
            host, port = url.removeprefix("http://").rsplit(":", 1)
            port_n = int(port)

            def every_server_running(timeout: float) -> bool:
                """Whether every server runs within `timeout` s of the last retry announced."""
                deadline = time.monotonic() + timeout
                while True:
                    servers = get(host, port_n, "/api/servers")["servers"]
                    states = [s["state"] for s in servers]
                    due = max((s.get("retry_in_seconds") or 0.0 for s in servers), default=0.0)
                    deadline = max(deadline, time.monotonic() + due + timeout)
                    if states.count("running") == len(targets) or time.monotonic() > deadline:
                        return states.count("running") == len(targets)
                    time.sleep(0.2)

            every_server_running(60)
            threads = [
                threading.Thread(target=client, args=(host, port_n, targets, phase, tally), daemon=True)
                for _ in range(clients)
            ]
            for thread in threads:
                thread.start()
            time.sleep(calm)
            phase[0] = "chaos"
            chaos_end = time.monotonic() + seconds
            while time.monotonic() < chaos_end:
                server = f"s{random.randrange(LAYOUT['victim'])}"
                pid = get(host, port_n, f"/api/servers/victim/{server}").get("pid")
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        kills += 1
                    except ProcessLookupError:
                        pass
                time.sleep(kill_every)
            phase[0] = "stop"
            for thread in threads:
                thread.join(HUNG_AFTER + 5)
            began = time.monotonic()
            all_running = every_server_running(60)
            recovered = time.monotonic() - began
            restarts = sum(s["restarts"] for s in get(host, port_n, "/api/servers?tenant=victim")["servers"])
            failed = marked_failed(log_path.read_text())
        code = hub.returncode
        text = log_path.read_text()
        tracebacks = text.count("Traceback")
        left = marked(tag)
        if tracebacks:
            first = text.index("Traceback")
            print("first traceback in the hub's log:\n" + text[text.rfind("\n", 0, first - 1) + 1 :][:3000])
    figures = report(tally, kills, restarts, all_running, recovered, tracebacks, code)
    print(f"times a victim server was failed (retried later, restart: always): {failed}")
    figures["failed"] = failed
    print(f"servers left after the hub stopped: {len(left)}   (target 0)")
    return {**figures, "children_left": len(left)}


def marked_failed(log: str) -> int:
    """How many times the hub's log says a server was failed and would be retried."""
    return log.count("times in a row (")


def report(
    tally: Tally, kills: int, restarts: int, all_running: bool, recovered: float, tracebacks: int, code: int
) -> dict[str, Any]:
    figures: dict[str, Any] = {"kills": kills, "restarts": restarts, "tracebacks": tracebacks, "exit": code}
    for phase in ("calm", "chaos"):
        outcomes = {o: n for (p, o), n in tally.outcomes.items() if p == phase}
        figures[phase] = {"sent": sum(outcomes.values()), **outcomes}
        print(
            f"\n{phase}: {figures[phase]['sent']} calls sent: "
            + ", ".join(f"{o} {n}" for o, n in outcomes.items())
        )
        for tenant in LAYOUT:
            p50, p99 = percentiles(tally.latency.get((phase, tenant), [0.0]))
            figures[phase][f"{tenant}_p50_p99_ms"] = (p50, p99)
            print(f"  {tenant:7} p50 {p50:6.2f} ms, p99 {p99:6.2f} ms")
    calm_ok = [s for t in ("calm1", "calm2") for s in tally.latency.get(("calm", t), [])]
    chaos_ok = [s for t in ("calm1", "calm2") for s in tally.latency.get(("chaos", t), [])]
    ratio = percentiles(chaos_ok)[1] / percentiles(calm_ok)[1] if calm_ok and chaos_ok else float("nan")
    figures["calm_tenants_p99_ratio"] = ratio
    allowed = ("calm ok", "victim ok", "victim 502 upstream", "victim 409 restarting")
    bad = sum(n for (p, o), n in tally.outcomes.items() if o not in allowed)
    calm_failures = sum(n for (p, o), n in tally.outcomes.items() if p == "calm" and not o.endswith(" ok"))
    figures["bad"] = bad
    print(f"\nkills {kills}, restarts of the victim's servers {restarts}")
    print(f"calm tenants' p99 during chaos / without: {ratio:.2f}   (target <= 1.5)")
    print(f"hung, failed on a calm tenant, or failed other than 502/409: {bad}   (target 0)")
    for outcome, example in tally.examples.items():
        print(f"  first {outcome}: {example}")
    print(f"failures before the chaos: {calm_failures}   (target 0)")
    print(f"tracebacks in the hub's log: {tracebacks}   (target 0); hub exit code {code}")
    print(f"every server running again: {all_running} ({recovered:.1f} s after the load stopped)")
    figures.update(all_running=all_running, calm_failures=calm_failures)
    return figures


if __name__ == "__main__":
    main()
