"""Reloading the configuration of a running hub: POST /api/admin/reload and SIGHUP."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import yaml
from conftest import server, wait_until
from helpers.served import Response, start_hub, stop_hub, write_config

ADMIN = "admin-key-0123456789"


def rewrite(config: Path, change: Any) -> None:
    data = yaml.safe_load(config.read_text())
    change(data)
    config.write_text(yaml.safe_dump(data))


def pid(hub: Any, tenant: str, name: str) -> int:
    return hub.get(f"/api/servers/{tenant}/{name}", key=ADMIN).body["pid"]


def test_reload_adds_removes_changes_and_keeps_unchanged_servers(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "t": {"servers": {"keep": server(), "drop": server(), "edit": server()}},
            "old": {"servers": {"x": server()}},
        },
        auth={"admin_keys": [ADMIN]},
    )
    hub = start_hub(config, tmp_path)
    try:
        assert hub.post("/api/tenants/t/start", key=ADMIN).status == 200
        keep, edit = pid(hub, "t", "keep"), pid(hub, "t", "edit")
        in_flight: list[Response] = []
        call = threading.Thread(
            target=lambda: in_flight.append(
                hub.post("/api/tools/keep.sleep?tenant=t", {"seconds": 2}, key=ADMIN)
            )
        )
        call.start()
        assert wait_until(
            lambda: hub.get("/api/tenants/t", key=ADMIN).body["quotas"]["max_concurrent_calls"]["used"] == 1,
            10,
        )

        def change(data: dict[str, Any]) -> None:
            servers = data["tenants"]["t"]["servers"]
            del servers["drop"]
            servers["edit"]["args"].append("--tools")
            servers["edit"]["args"].append("2")
            servers["new"] = server()
            data["tenants"]["t"]["api_keys"] = ["t-key-0123456789abc"]
            data["tenants"]["t"]["quotas"] = {"max_calls_per_minute": 1000}
            del data["tenants"]["old"]
            data["tenants"]["fresh"] = {"env": data["tenants"]["t"]["env"], "servers": {"y": server()}}

        rewrite(config, change)
        answer = hub.post("/api/admin/reload", key=ADMIN)
        assert answer.status == 200, answer.text
        assert answer.body["servers"]["t"] == {
            "drop": "removed",
            "edit": "restarted",
            "keep": "unchanged",
            "new": "added",
        }
        assert answer.body["tenants"] == {"old": "removed", "t": "updated", "fresh": "added"}
        call.join(30)
        assert in_flight[0].status == 200 and in_flight[0].body["is_error"] is False
        assert pid(hub, "t", "keep") == keep  # the same process, its call completed
        assert wait_until(lambda: hub.get("/api/servers/t/edit", key=ADMIN).body["state"] == "running", 20)
        assert pid(hub, "t", "edit") != edit
        assert "edit.t1" in {t["name"] for t in hub.get("/api/tools?tenant=t", key=ADMIN).body["tools"]}
        assert hub.get("/api/servers/t/drop", key=ADMIN).status == 404
        assert hub.get("/api/tenants/old", key=ADMIN).status == 404
        assert wait_until(lambda: hub.get("/api/servers/t/new", key=ADMIN).body["state"] == "running", 20)
        assert hub.get("/api/tenants/fresh", key=ADMIN).status == 200
        # Keys and quotas apply at once.
        assert hub.post("/api/tools/keep.echo", {"text": "new key"}, key="t-key-0123456789abc").status == 200
        assert hub.get("/api/tenants/t", key=ADMIN).body["quotas"]["max_calls_per_minute"]["limit"] == 1000
    finally:
        assert stop_hub(hub) == 0


def test_a_reload_reports_only_the_tenants_that_changed(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {"t": {"servers": {"s": server()}}, "u": {"servers": {"s": server()}}},
        auth={"admin_keys": [ADMIN]},
    )
    hub = start_hub(config, tmp_path)
    try:
        hub.post("/api/tenants/t/start", key=ADMIN)
        before = pid(hub, "t", "s")
        same = hub.post("/api/admin/reload", key=ADMIN)
        assert same.status == 200, same.text
        assert same.body["tenants"] == {"t": "unchanged", "u": "unchanged"}
        assert same.body["servers"] == {"t": {"s": "unchanged"}, "u": {"s": "unchanged"}}
        rewrite(config, lambda data: data["tenants"]["u"].update(quotas={"max_calls_per_minute": 5}))
        quota = hub.post("/api/admin/reload", key=ADMIN).body
        assert quota["tenants"] == {"t": "unchanged", "u": "updated"}
        assert quota["servers"]["u"] == {"s": "unchanged"}  # a quota is no reason to restart
        assert pid(hub, "t", "s") == before
    finally:
        assert stop_hub(hub) == 0


def test_an_invalid_reload_changes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"t": {"servers": {"s": server()}}}, auth={"admin_keys": [ADMIN]})
    hub = start_hub(config, tmp_path)
    try:
        hub.post("/api/tenants/t/start", key=ADMIN)
        before = pid(hub, "t", "s")
        rewrite(config, lambda data: data["tenants"]["t"]["servers"]["s"].pop("command"))
        answer = hub.post("/api/admin/reload", key=ADMIN)
        assert answer.status == 400 and answer.body["error"]["code"] == "invalid_config"
        assert "tenants.t.servers.s.command: 'command' is required" in answer.body["error"]["message"]
        assert pid(hub, "t", "s") == before
        assert hub.post("/api/tools/s.echo?tenant=t", {"text": "still"}, key=ADMIN).status == 200
        assert hub.post("/api/admin/reload").status == 401
    finally:
        assert stop_hub(hub) == 0


def test_sighup_reloads(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"t": {"servers": {"s": server()}}}, auth={"admin_keys": [ADMIN]})
    hub = start_hub(config, tmp_path)
    try:
        hub.post("/api/tenants/t/start", key=ADMIN)
        rewrite(config, lambda data: data["tenants"]["t"]["servers"].update(s2=server()))
        hub.proc.send_signal(signal.SIGHUP)
        assert wait_until(
            lambda: (
                hub.get("/api/servers/t/s2", key=ADMIN).status == 200
                and hub.get("/api/servers/t/s2", key=ADMIN).body["state"] == "running"
            ),
            20,
        )
        rewrite(config, lambda data: data.update(tenants=[]))  # invalid: logged, nothing changes
        hub.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "the configuration was not reloaded" in hub.log(), 10)
        assert hub.get("/api/servers/t/s2", key=ADMIN).body["state"] == "running"
    finally:
        assert stop_hub(hub) == 0


def test_reload_flag_applies_a_changed_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"t": {"servers": {"s": server()}}}, auth={"admin_keys": [ADMIN]})
    hub = start_hub(config, tmp_path, "--reload")
    try:
        rewrite(config, lambda data: data["tenants"]["t"]["servers"].update(s2=server()))
        assert wait_until(lambda: hub.get("/api/servers/t/s2", key=ADMIN).status == 200, 15)
    finally:
        assert stop_hub(hub) == 0


def test_reload_under_load_loses_no_call_to_an_unchanged_server(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, {"t": {"servers": {"s": server(), "other": server()}}}, auth={"admin_keys": [ADMIN]}
    )
    hub = start_hub(config, tmp_path)
    try:
        hub.post("/api/tenants/t/start", key=ADMIN)
        statuses: list[int] = []
        done = threading.Event()

        def load() -> None:
            while not done.is_set():
                statuses.append(hub.post("/api/tools/s.echo?tenant=t", {"text": "x"}, key=ADMIN).status)

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        for i in range(3):
            rewrite(
                config,
                lambda data, i=i: data["tenants"]["t"]["servers"]["other"]["args"].extend(
                    ["--name", f"v{i}"]
                ),
            )
            assert hub.post("/api/admin/reload", key=ADMIN).body["servers"]["t"]["s"] == "unchanged"
        done.set()
        for worker in workers:
            worker.join(30)
        assert len(statuses) > 20 and set(statuses) == {200}
    finally:
        assert stop_hub(hub) == 0
