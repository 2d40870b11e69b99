"""tensorweave: a symbolic tensor dataflow graph compiler and executor with a TF1-style API.

    import tensorweave as tw
    x = tw.placeholder(tw.float32, [None, 3])
    y = tw.reduce_sum(x * 2.0, axis=1)
    with tw.Session() as sess:
        print(sess.run(y, feed_dict={x: [[1, 2, 3]]}))
"""

from tensorweave import errors
from tensorweave.executor.config import ConfigProto, RunMetadata, RunOptions
from tensorweave.executor.session import InteractiveSession, Session
from tensorweave.graph.core import (Graph, Operation, Tensor, get_default_graph,
                                    get_default_session, reset_default_graph)
from tensorweave.graph.dtypes import (DType, as_dtype, bfloat16, double, float16, float32,
                                      float64, half, int8, int16, int32, int64, string, uint8,
                                      uint16, uint32, uint64)
from tensorweave.graph.dtypes import bool_ as bool  # noqa: A001  (TF1's tf.bool)
from tensorweave.graph.scopes import (GraphKeys, add_to_collection, add_to_collections,
                                      colocate_with, control_dependencies, device,
                                      get_collection, get_collection_ref, name_scope)
from tensorweave.graph.shapes import Dimension, TensorShape
from tensorweave.ops.array import *  # noqa: F401,F403
from tensorweave.ops.common import convert_to_tensor, register_tensor_conversion_function
from tensorweave.ops.control import *  # noqa: F401,F403
from tensorweave.ops.math import *  # noqa: F401,F403
from tensorweave.ops.gradients import gradients
from tensorweave.ops.importer import import_graph_def
from tensorweave.ops.random import *  # noqa: F401,F403
from tensorweave.ops.script import py_func
from tensorweave.ops.state import *  # noqa: F401,F403

from tensorweave import nn, placement, trace, train  # noqa: E402  (the tw.* namespaces)
from tensorweave import passes  # noqa: E402,F401  (tw.passes.PIPELINE)
