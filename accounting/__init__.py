"""Token accounting: every model call becomes one usage event, priced and attributed.

``callbacks`` records LangChain calls (graphs, chains, LangServe), the chat service records
relayed calls, and ``recorder`` writes the events to the database in batches, off the
request path, without losing any.
"""
