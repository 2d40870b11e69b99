from tensorweave.train.graph_io import write_graph
from tensorweave.ops.state import (create_global_step, get_global_step,  # noqa: F401
                                    get_or_create_global_step, global_step)
