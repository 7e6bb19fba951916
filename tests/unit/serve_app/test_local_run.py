"""`make serve`'s launcher: its own options, and everything else passed on to `serve run`."""

from __future__ import annotations

from serve_app.local_run import LEAN_SYSTEM_CONFIG, parse


def test_unknown_options_go_to_serve_run():
    args, rest = parse(["configs/dev.yaml", "--num-cpus", "4", "--non-blocking", "--name", "x"])
    assert args.config == "configs/dev.yaml" and args.num_cpus == 4 and not args.dashboard
    assert rest == ["--non-blocking", "--name", "x"]


def test_dashboard_is_opt_in_and_idle_workers_are_not_prestarted():
    assert parse(["c.yaml"])[0].dashboard is False
    assert parse(["--dashboard", "c.yaml"])[0].dashboard is True
    assert LEAN_SYSTEM_CONFIG["prestart_worker_first_driver"] is False
