"""Tree search: fork a sandbox, try something different in each fork, keep the best.

Each fork is an exact copy of the parent (its REPL's memory and its files). The parent then
merge_into()s the winner: from then on the parent's id answers with the winner's state. The
other forks are closed.

    FORKBOX_HOST=127.0.0.1:7070 python3 sdk/python/examples/tree_search.py
"""

from forkbox import Sandbox

with Sandbox() as parent:
    parent.run_code(
        "import random\n"
        "random.seed(7)\n"
        "data = [random.gauss(10, 3) for _ in range(10_000)]\n"
    )

    candidates = ["mean", "median", "trimmed mean"]
    children = parent.fork(len(candidates))
    scores = []
    for child, method in zip(children, candidates):
        r = child.run_code(
            "import statistics\n"
            f"method = {method!r}\n"
            "if method == 'mean': estimate = statistics.fmean(data)\n"
            "elif method == 'median': estimate = statistics.median(data)\n"
            "else: estimate = statistics.fmean(sorted(data)[500:-500])\n"
            "score = -abs(estimate - 10)\n"
            "score"
        )
        print(f"{child.id} {method:>13}: score {r.result:.5f}")
        scores.append(r.result)

    best = max(range(len(children)), key=lambda i: scores[i])
    winner = children[best]
    parent.merge_into(winner)  # the parent's id now has the winner's REPL and files
    for child in children:
        child.close()  # the winner's close() does nothing: its state lives on as the parent

    print("kept:", parent.run_code("method").result, "in", parent.id)
