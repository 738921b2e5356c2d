"""A purchase request's approval chain, level by level by amount, then the order to the vendor."""

from engine.processes import Process

PROCESS = Process(name="purchase-approval", title="Purchase approval", actor="purchase-approval")
