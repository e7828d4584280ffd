"""The course: drill checks, the self-check, progress, the review quiz and checklist.

This package teaches; it is not part of the runtime. It imports the runtime (the kit's policy,
world and graph) to judge a learner's answers; no runtime module imports it.
"""
