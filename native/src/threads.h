// How many CPU threads a decode should use: as many as the cores other processes leave free.
//
// A llama.cpp graph is a few hundred operations, each split over the threads with a barrier after
// it. When another process holds a core, one of our threads is descheduled now and then and every
// barrier waits for it: on 2 cores beside one busy process, 2 threads decoded 0.75x as fast as 1
// thread (BENCHMARKS.md, "Under CPU contention"). So before each decode the scorer asks this
// governor, which measures the CPU time other processes used on the cores we may run on (Linux:
// /proc/stat over the affinity mask, minus this process's own time from getrusage) over the last
// quarter second or more, and answers max(1, round(cores - others)), capped at the configured
// threads. Elsewhere (no /proc/stat) it always answers the configured count.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <vector>

#include "llama.h"

namespace tallrec {

// Other processes' CPU use on the cores this process may run on, measured at most every quarter
// second; one per process (every context's governor reads it), thread-safe.
class LoadMonitor {
  public:
    static LoadMonitor & Instance();
    // Samples when the last sample is old enough (and no other context is sampling).
    void Update();
    double Others() const { return others_.load(std::memory_order_relaxed); }
    int32_t Cores() const { return static_cast<int32_t>(cpus_.size()); }
    bool Available() const { return !cpus_.empty(); }

  private:
    LoadMonitor();
    struct Sample {
        std::chrono::steady_clock::time_point at;
        uint64_t busy = 0, total = 0;  // jiffies over our cores
        double self = 0;               // this process's CPU seconds
    };
    bool Read(Sample & s) const;

    std::vector<int> cpus_;  // the cores we may run on, ascending (empty: no /proc/stat)
    std::mutex mu_;
    Sample last_{};
    bool haveLast_ = false;
    std::atomic<double> others_{-1};
};

class ThreadGovernor {
  public:
    // maxThreads: the configured threads (the threadpool's size). adapt false: always maxThreads.
    ThreadGovernor(int32_t maxThreads, bool adapt);

    // Threads for the next decode (lets the monitor sample when its last sample is old enough).
    int32_t Next();

    // Threads a decode would use now (what the last decode used, unless the load changed since).
    int32_t Current() const;
    bool Adaptive() const { return adapt_; }
    // Other processes' CPU use on our cores, in cores (smoothed); -1 before the first estimate or when not adaptive.
    double Others() const { return adapt_ ? LoadMonitor::Instance().Others() : -1; }

    // The rule, exposed for tests: threads for `cores` usable cores of which `others` are busy.
    static int32_t Choose(int32_t maxThreads, int32_t cores, double others);

  private:
    int32_t max_;
    bool adapt_;
};

// Before a llama_decode: sets the governor's thread count on the context (no-op without one).
inline void PaceThreads(llama_context * ctx, ThreadGovernor * governor) {
    if (!governor || !governor->Adaptive()) return;
    const int32_t n = governor->Next();
    llama_set_n_threads(ctx, n, n);
}

}  // namespace tallrec
