"""``tw.placement``: devices and clusters, placement constraints, the cost model.

    cluster = tw.placement.Cluster.from_file("cluster.yaml")
    constraints = tw.placement.build_constraints(graph.get_operations(), cluster)
"""

from tensorweave.placement.devices import (Cluster, Device, DeviceProfile, Link,  # noqa: F401
                                           LinkProfiles)
