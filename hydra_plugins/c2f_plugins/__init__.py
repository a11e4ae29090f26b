"""c2f's Hydra plugins: the `sweeps/` search path and launchers that report failed jobs.

Hydra finds them in the `hydra_plugins` namespace; `python run.py` puts the repository first
on `sys.path`, so nothing needs installing.
"""
