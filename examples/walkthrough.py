"""A walk through building and running a tensorweave graph.

    python examples/walkthrough.py
"""

import numpy as np

import tensorweave as tw


def main():
    graph = tw.Graph()
    with graph.as_default():
        # 1. Inputs: a placeholder is a value the caller feeds at run time. None = any size.
        x = tw.placeholder(tw.float32, [None, 3], name="x")

        # 2. Ops build graph nodes; nothing is computed yet. Scopes name and place them.
        with tw.name_scope("layer"):
            w = tw.constant([[1.0, 0.5], [0.0, -1.0], [2.0, 1.0]], name="w")
            b = tw.constant([0.1, -0.1], name="b")
            h = tw.add(tw.matmul(x, w), b, name="pre_activation")
        print("built", h, "on", h.device or "any device")
        print("its op", h.op.name, "was created at", h.op.location_str())

        # 3. Static shapes are inferred while building; unknown dims stay unknown.
        total = tw.reduce_sum(h, axis=1, name="row_sum")
        print("static shape of row_sum:", total.shape)

        # 4. Control dependencies order ops that share no data.
        marker = tw.no_op(name="marker")
        with tw.control_dependencies([marker]):
            after = tw.identity(total, name="after_marker")

        # 5. Gradients are graph ops too.
        (dw,) = tw.gradients(total, [w])

        # 6. A Session runs what the fetches need, given the feeds.
        with tw.Session() as sess:
            feed = {x: np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]], np.float32)}
            values = sess.run({"row_sum": after, "dW": dw}, feed_dict=feed)
            print("row sums:", values["row_sum"])
            print("d(sum)/dW:\n", values["dW"])

            # 7. Step stats: which op ran when.
            meta = tw.RunMetadata()
            sess.run(after, feed_dict=feed, run_metadata=meta)
            for s in meta.step_stats:
                print(f"  {s.node_name:32s} {s.op_type:10s} {s.duration_us:8.1f} us")

            # 8. Errors name the op, its type, device and where you created it.
            try:
                sess.run(after)
            except tw.errors.InvalidArgumentError as e:
                print("as expected:", e)


if __name__ == "__main__":
    main()
