"""Benchmarks of the relay: `python -m bench SCENARIO|all` (or `nox -s bench`); see bench/README.md.

Layout:

* `cli`: options, `all`, CPU pinning of the coordinator, the report header; SCENARIOS lists the scenarios.
* `servers`: each scenario's upstream (the emulator, or `echo_upstream` for audio and connect) and the servers
  under test (relay per transport, `bare` forwarder per transport, LiteLLM via `peer`), one at a time on the
  relay CPU; `procs`: children, pinning, /proc sampling.
* `loadgen`: spawned load generator processes running asyncio jobs (on uvloop when installed, `loops`) with a
  common start time; `rawws`: their minimal WebSocket client; `dialects`: what a client says on an OpenAI or a
  Gemini Live path.
* `common`: the per-run `Context` and helpers to run a measurement on every path; `report`: tables,
  percentiles, markdown and JSON; `targets`: the Targets table; `machine`: machine and software facts.
* Scenarios, each a module with its load generator client: `text` and `audio_reply` (`turns_client`),
  `idle` and `connect` (`conn_client`), `audio` (`audio_phase`, `audio_report`, `audio_client`), `tls` (a
  wss:// emulator; the text and audio clients).
"""
