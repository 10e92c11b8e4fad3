"""The paper's experiments, live and against baselines (`tokenpools experiment`).

`plan` defines an experiment once (config, generated scenario, phases); `live`
runs it through the local stack once per arm; `analysis` turns what was
measured into per-tenant results and the paper's claims; `figures` and
`report` write them down. The offline simulator runs the same `Scenario`.
"""
