"""``tw.train``: optimizers, checkpoints, the global step and graph writing (TF1 names)."""

from tensorweave.ops.state import (create_global_step, get_global_step,  # noqa: F401
                                   get_or_create_global_step, global_step)
from tensorweave.train.graph_io import write_graph  # noqa: F401
from tensorweave.train.optimizers import (AdagradOptimizer, AdamOptimizer,  # noqa: F401
                                          GradientDescentOptimizer, MomentumOptimizer,
                                          Optimizer, RMSPropOptimizer)
from tensorweave.train.saver import (CheckpointState, Saver, checkpoint_exists,  # noqa: F401
                                     get_checkpoint_state, latest_checkpoint, list_variables,
                                     load_variable, update_checkpoint_state)
from tensorweave.train.cluster import ClusterSpec  # noqa: F401
from tensorweave.train.hooks import (CheckpointSaverHook, CheckpointSaverListener,  # noqa: F401
                                     FeedFnHook, LoggingTensorHook, SessionRunArgs,
                                     SessionRunContext, SessionRunHook, SessionRunValues,
                                     StepCounterHook, StopAtStepHook)
from tensorweave.train.monitored_session import (ChiefSessionCreator,  # noqa: F401
                                                 MonitoredSession, MonitoredTrainingSession,
                                                 Scaffold, WorkerSessionCreator)
from tensorweave.train.collective import all_reduce, all_reduce_buckets  # noqa: F401,E402
from tensorweave.train.replicate import Replicated, replicate  # noqa: F401,E402
