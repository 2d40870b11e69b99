"""``tw.placement``: devices and clusters, placement constraints, the cost model.

    cluster = tw.placement.Cluster.from_file("cluster.yaml")
    constraints = tw.placement.build_constraints(graph.get_operations(), cluster)
    cost = tw.placement.CostModel(cluster, feed_shapes={"x": (64, 784)})
"""

from tensorweave.placement.constraints import (Constraints, Group,  # noqa: F401
                                               build_constraints, colocation_groups)
from tensorweave.placement.cost_model import CostModel, calibrate  # noqa: F401
from tensorweave.placement.devices import (CPU_PROFILE, DEFAULT_PROFILES,  # noqa: F401
                                           GPU_PROFILE, Cluster, Device, DeviceNotFoundError,
                                           DeviceProfile, Link, LinkProfiles)
from tensorweave.placement.plan import CutEdge, DeviceUsage, OpPlacement, Plan  # noqa: F401
from tensorweave.placement.simulator import SimResult, simulate  # noqa: F401
from tensorweave.placement.problem import Placement, PlacementProblem  # noqa: F401
from tensorweave.placement.partition import Partitioning, Transfer, partition  # noqa: F401
from tensorweave.placement.step_plan import StepPlan  # noqa: F401
from tensorweave.placement.strategies import STRATEGIES, register_strategy  # noqa: F401
# Last: the function ``plan`` replaces the module of that name as the package's attribute.
from tensorweave.placement.api import plan  # noqa: F401,E402
