"""The embedded configs: the sweep's default, the collapse example and a diagnose example.

``gradflow run`` and ``gradflow collapse`` without a config file run the first two;
``load_config(command=...)`` reads each.
"""

DEFAULT_CONFIG = """\
# gradflow's embedded default: lag profiles over forget bias x weight scale x 3 seeds, H = 32, T = 200.
[model]
input_size = 8
hidden_size = 32
activation = "tanh"
recurrent_activation = "sigmoid"

[grid]
forget_bias = {start = -3.0, stop = 3.0, num = 25}
weight_scale = {start = 0.25, stop = 4.0, num = 13, log = true}
seed = [0, 1, 2]

[data]
seq_len = 200
input_seed = 0

[analysis]
wrt = ["h", "state"]
decades = 10.0
dtype = "float32"
chunk_size = "auto"
memory_budget_mb = 1024
"""

DEFAULT_COLLAPSE_CONFIG = """\
# The recall task: does an LSTM learn to carry the first input's sign to the end, by forget bias and length?
[model]
hidden_size = 16

[grid]
forget_bias = {start = -3.0, stop = 3.0, num = 7}
learning_rate = 0.01
seed = [0, 1]

[data]
task = "recall"
n = 512
seq_len = [5, 20, 80]
validation = 0.25

[train]
optimizer = "adam"
steps = 300
batch_size = 32
checkpoints = 3

[analysis]
map = ["forget_bias", "seq_len"]
"""

DIAGNOSE_EXAMPLE = """\
# The second seed example: random features and labels, N = 100, an LSTM(50) with a relu cell activation.
[model]
hidden_size = 50
activation = "relu"

[grid]
forget_bias = 1.0
scheme = "orthogonal"
learning_rate = 0.001
seed = [0, 1, 2]

[data]
task = "seed"
n = 100
seq_len = 20
validation = 0.2

[train]
optimizer = "adam"
epochs = 100
batch_size = 32
"""

#: Each command's embedded config.
EMBEDDED: dict[str, str] = {"sweep": DEFAULT_CONFIG, "collapse": DEFAULT_COLLAPSE_CONFIG, "diagnose": DIAGNOSE_EXAMPLE}
