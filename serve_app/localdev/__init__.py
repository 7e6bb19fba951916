"""Local-development helpers: a private local Ray cluster with the app deployed on it, free ports,
the process tree a command started, and extra Ray nodes on this machine.

For tests, benchmarks (`bench/`) and `make serve`-style local runs only. The production path
(`serve_app.app:build_app`, the deployments, `serve run` of a config) never imports this package.

- `serve_app.localdev.cluster`: the repo's paths, `free_port`, reading and merging a config's
  app args, and `start_cluster` / `ServeCluster.deploy` / `stop_cluster`.
- `serve_app.localdev.processes`: `/proc` readers: `process_tree`, `stat_fields`, `cpu_rate`, `rss_bytes`.
- `serve_app.localdev.nodes`: `WorkerNode`, another Ray node on this machine joined to the cluster
  (its own raylet and temp dir), killed whole like a lost machine; `ServeCluster.add_node` starts one.
"""
