"""Peak-memory snippet for benchmark child processes (no imports: the edge bench loads it
without pulling the pandas/FLAML stack into the process it times)."""

__all__ = ["PEAK_RSS_SOURCE"]

# Source for a child process: its own peak RSS. VmHWM is this process image's own high-water
# mark; ru_maxrss would also count the parent's memory that Linux carries across fork + exec.
# benchmarks/_coldstart.py and benchmarks/edge_latency.py both run it.
PEAK_RSS_SOURCE = """
import resource

def peak_rss_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""
