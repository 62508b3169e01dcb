"""Replicas of a stage: the ``--replicas`` syntax, the processes it names, and compose's side."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genobase import stack
from genobase.cli import main

ROOT = Path(__file__).parents[2]


def test_replicas_are_parsed_and_checked() -> None:
    assert stack.parse_replicas("parser=2, persister=3,assembler=1") == {"parser": 2, "persister": 3, "assembler": 1}
    assert stack.parse_replicas("") == {}
    for bad in ("intake=2", "refget=2", "parser=0", "parser=9", "parser=two", "parser"):
        with pytest.raises(ValueError):
            stack.parse_replicas(bad)
    assert stack.format_replicas({"parser": 2, "persister": 1}) == "parser=2"


def test_the_cli_refuses_a_stage_that_cannot_have_replicas(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--replicas", "intake=2"])
    assert "cannot have replicas" in capsys.readouterr().err


def test_each_replica_is_a_process_of_its_own(tmp_path: Path) -> None:
    values = {stack.REPLICAS_SETTING: "parser=3,assembler=2", stack.metrics_port_setting("parser"): "9102"}
    processes = stack.ServiceProcesses(tmp_path, values)
    names = processes.instances()
    assert names.count("intake") == 1 and "intake-2" not in names
    assert [n for n in names if n.startswith("parser")] == ["parser", "parser-2", "parser-3"]
    assert [n for n in names if n.startswith("assembler")] == ["assembler", "assembler-2"]
    assert stack.split_instance("parser-3") == ("parser", 3) and stack.split_instance("watchdog") == ("watchdog", 1)
    # Each has its own pid file, log and metrics port; none runs yet.
    assert len({processes.pid_file(n) for n in names}) == len({processes.log_file(n) for n in names}) == len(names)
    assert [processes.metrics_port(n) for n in ("parser", "parser-2", "parser-3")] == ["9102", "9112", "9122"]
    assert processes.running_instances() == []


def test_compose_scales_the_consuming_stages_only() -> None:
    """The scalable services publish no port and name no container (either would stop --scale), and
    take their count from .env; the HTTP services keep one process and their port."""
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for name in stack.SCALABLE:
        service = services[name]
        assert "ports" not in service and "container_name" not in service, name
        default = stack.DEFAULT_REPLICAS.get(name, 1)
        assert service["deploy"]["replicas"] == f"${{GENOBASE_{name.upper()}_REPLICAS:-{default}}}"
    for name in ("intake", "refget"):
        assert "deploy" not in services[name] and services[name]["ports"]
