"""The old command: `python bench/gpu_full_size.py ARGS` runs `python -m bench.gpu ARGS` (bench/gpu/)."""
import pathlib, runpy, sys  # noqa: E401
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
runpy.run_module("bench.gpu", run_name="__main__", alter_sys=True)
