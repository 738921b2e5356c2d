"""The deadline sweep: the engine's minute-by-minute work on every process's steps and messages (run by the engine
loop; this deployment runs it once by hand)."""

from engine.processes import Process

PROCESS = Process(name="deadline-sweep", title="Deadline sweep", actor="sweep")
