"""The one error type of the local control plane: its message tells a person what to do."""


class ClusterError(RuntimeError):
    """Starting, building or stopping the local control plane failed for a reason worth reading."""
