"""hitl-kit: put a human in the loop of an LLM agent.

Kept deliberately empty of imports so that ``import hitl_kit`` is cheap; import the module you
need (``hitl_kit.policy``, ``hitl_kit.world``, ``hitl_kit.llm`` ...).
"""

__version__ = "0.1.0"
