"""``tw.train.ClusterSpec``: the jobs and tasks of a distributed program, as in TF1.

    spec = tw.train.ClusterSpec({"worker": ["node0:2222", "node1:2222"], "ps": ["node2:2222"]})
    spec = tw.train.ClusterSpec({"worker": 4, "ps": 1})      # counts, for planning
    cluster = tw.placement.Cluster.from_cluster_spec(spec, devices_per_task={"CPU": 1, "GPU": 4})

A job is a list of ``"host:port"`` addresses, a dict ``{task_index: address}`` (sparse task
indices, as TF1 allows) or a task count (tasks without addresses, for planning a cluster).
"""

from __future__ import annotations

from tensorweave.placement.devices import normalize_jobs


class ClusterSpec:
    """The jobs of a cluster and the tasks of each job."""

    def __init__(self, cluster):
        if isinstance(cluster, ClusterSpec):
            self._jobs = {job: dict(tasks) for job, tasks in cluster._jobs.items()}
            self._counted = set(cluster._counted)
        else:
            cluster = dict(cluster or {})
            self._jobs = normalize_jobs(cluster)
            self._counted = {job for job, tasks in cluster.items() if isinstance(tasks, int)}

    @property
    def jobs(self) -> list[str]:
        """The job names, sorted."""
        return list(self._jobs)

    def num_tasks(self, job_name: str) -> int:
        """How many tasks ``job_name`` has."""
        return len(self._tasks(job_name))

    def task_indices(self, job_name: str) -> list[int]:
        """The task indices of ``job_name``, sorted."""
        return list(self._tasks(job_name))

    def task_address(self, job_name: str, task_index: int) -> str:
        """The ``host:port`` of one task."""
        tasks = self._tasks(job_name)
        if task_index not in tasks:
            raise ValueError(f"job {job_name!r} has no task {task_index} (its tasks: "
                             f"{list(tasks)})")
        address = tasks[task_index]
        if address is None:
            raise ValueError(f"job {job_name!r} was given as a task count, so its tasks have no "
                             f"addresses")
        return address

    def job_tasks(self, job_name: str) -> list:
        """The addresses of ``job_name`` indexed by task (None for a missing index)."""
        tasks = self._tasks(job_name)
        result = [None] * (max(tasks) + 1)
        for index, address in tasks.items():
            result[index] = address
        return result

    def as_dict(self) -> dict:
        """The dict this spec was built from: a count, a list (dense indices) or a dict."""
        result = {}
        for job, tasks in self._jobs.items():
            if job in self._counted:
                result[job] = len(tasks)
            elif list(tasks) == list(range(len(tasks))):
                result[job] = list(tasks.values())
            else:
                result[job] = dict(tasks)
        return result

    def as_cluster_def(self) -> dict:
        """TF1's ClusterDef shape: ``{"job": [{"name": ..., "tasks": {index: address}}]}``."""
        return {"job": [{"name": job, "tasks": dict(tasks)} for job, tasks in self._jobs.items()]}

    def _tasks(self, job_name) -> dict:
        try:
            return self._jobs[job_name]
        except KeyError:
            raise ValueError(f"no such job in the cluster spec: {job_name!r} (jobs: "
                             f"{self.jobs})") from None

    def __bool__(self):
        return bool(self._jobs)

    def __eq__(self, other):
        return isinstance(other, ClusterSpec) and self.as_dict() == other.as_dict()

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __repr__(self):
        return f"ClusterSpec({self.as_dict()!r})"
