"""The store box's modules (decision 0030): each file here defines ``MODULE``, a
``edge_agent.kernel.module.Module`` subclass the kernel finds by scanning this package.
Modules of other packages register under the entry-point group ``storefleet.agent_modules``.
"""
