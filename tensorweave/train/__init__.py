from tensorweave.train.graph_io import write_graph
