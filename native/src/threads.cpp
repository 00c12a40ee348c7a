#include "threads.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#if defined(__linux__)
#include <sched.h>
#include <sys/resource.h>
#endif

namespace tallrec {

namespace {

// Shorter windows see too few of the kernel's 100 Hz ticks to tell half a core from a whole one.
constexpr auto kWindow = std::chrono::milliseconds(250);

}  // namespace

LoadMonitor & LoadMonitor::Instance() {
    static LoadMonitor monitor;  // never destroyed before the contexts that use it: a function-local static outlives them
    return monitor;
}

LoadMonitor::LoadMonitor() {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set)) cpus_.push_back(c);
    Sample s;
    if (!Read(s)) cpus_.clear();
#endif
}

bool LoadMonitor::Read(Sample & s) const {
#if defined(__linux__)
    s.at = std::chrono::steady_clock::now();
    rusage ru{};
    if (getrusage(RUSAGE_SELF, &ru) != 0) return false;
    s.self = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
             static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
    FILE * f = std::fopen("/proc/stat", "r");
    if (!f) return false;
    s.busy = s.total = 0;
    size_t found = 0;
    char line[512];
    while (std::fgets(line, sizeof(line), f)) {
        if (std::strncmp(line, "cpu", 3) != 0) break;  // the cpu lines come first
        int cpu = -1;
        unsigned long long v[8] = {};  // user nice system idle iowait irq softirq steal
        if (std::sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                        &v[7]) < 8)
            continue;
        if (!std::binary_search(cpus_.begin(), cpus_.end(), cpu)) continue;
        const uint64_t busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        s.busy += busy;
        s.total += busy + v[3] + v[4];
        found++;
    }
    std::fclose(f);
    return found > 0;
#else
    (void)s;
    return false;
#endif
}

void LoadMonitor::Update() {
    if (cpus_.empty()) return;
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) return;  // another context is sampling right now
    const auto now = std::chrono::steady_clock::now();
    if (haveLast_ && now - last_.at < kWindow) return;
    Sample s;
    if (!Read(s)) return;
    if (haveLast_ && s.total > last_.total) {
        const double wall = std::chrono::duration<double>(s.at - last_.at).count();
        const double busyCores =
            static_cast<double>(s.busy - last_.busy) / static_cast<double>(s.total - last_.total) * static_cast<double>(cpus_.size());
        const double mine = (s.self - last_.self) / wall;
        const double others = std::max(0.0, busyCores - mine);
        const double prev = others_.load(std::memory_order_relaxed);
        others_.store(prev < 0 ? others : 0.5 * prev + 0.5 * others, std::memory_order_relaxed);
    }
    last_ = s;
    haveLast_ = true;
}

ThreadGovernor::ThreadGovernor(int32_t maxThreads, bool adapt)
    : max_(std::max(1, maxThreads)), adapt_(adapt && maxThreads >= 2 && LoadMonitor::Instance().Available()) {}

int32_t ThreadGovernor::Choose(int32_t maxThreads, int32_t cores, double others) {
    const double free = static_cast<double>(cores) - std::max(0.0, others);
    const auto n = static_cast<int32_t>(std::floor(free + 0.5));
    return std::clamp(n, 1, std::max(1, maxThreads));
}

int32_t ThreadGovernor::Current() const {
    if (!adapt_) return max_;
    const LoadMonitor & m = LoadMonitor::Instance();
    const double others = m.Others();
    return others < 0 ? max_ : Choose(max_, m.Cores(), others);
}

int32_t ThreadGovernor::Next() {
    if (!adapt_) return max_;
    LoadMonitor::Instance().Update();
    return Current();
}

}  // namespace tallrec
