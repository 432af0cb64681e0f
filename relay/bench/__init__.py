"""Benchmarks of the relay: `python -m relay bench SCENARIO` (or `nox -s bench`).

Layout, so that further scenarios (text turn latency, idle-session memory, connect rate, a LiteLLM
peer) are one more module each:

* `cli`: argument parsing, CPU pinning of the coordinator, the report header; SCENARIOS lists the scenarios.
* `procs`: the emulator and the relay as child processes (`python -m relay ...`), pinning, /proc sampling.
* `loadgen`: a pool of spawned load generator processes that run asyncio jobs with a common start time.
* `report`: tables, percentiles, markdown and JSON output; `machine`: machine and software facts.
* `audio` + `audio_client`: the audio streaming scenario (orchestration, and the client the generators run).
"""
