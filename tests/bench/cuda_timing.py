"""cuda_timing.py - timing on the GPU as docs/BENCHMARKS.md reports it: device events around a CUDA
graph's replay (or an eager call), warmed up first, the median of several."""
import torch


def _median_ms(run, reps):
    times = []
    for _ in range(reps):
        a, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        run()
        e.record()
        e.synchronize()
        times.append(a.elapsed_time(e))
    times.sort()
    return times[len(times) // 2]


def graph_ms(fn, reps=20, warm=2):
    """(milliseconds of one fn() replayed from a CUDA graph, the graph, what fn returned in it)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warm):
            fn()
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = fn()
    torch.cuda.current_stream().wait_stream(s)
    g.replay()
    torch.cuda.synchronize()
    return _median_ms(g.replay, reps), g, out


def eager_ms(fn, reps=10):
    fn()
    torch.cuda.synchronize()
    return _median_ms(fn, reps)
