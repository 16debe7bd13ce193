"""The evaluation's usage error, shared by pairing, the run and the command line."""


class EvaluationError(ValueError):
    """Bad usage or configuration: nothing can be evaluated; the message says why."""
