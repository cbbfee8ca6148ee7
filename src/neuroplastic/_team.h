/* Shared by the native kernels (boltzmann/_native.c, sal/_native.c; each includes it once): a team of threads to
 * run a kernel's work on, and a barrier for its threads. */
#ifndef NEUROPLASTIC_TEAM_H
#define NEUROPLASTIC_TEAM_H

#if defined(__linux__)
#include <dlfcn.h>
#include <link.h>
#endif
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

/* ---- threads: torch's own OpenMP team ----
 *
 * The step runs on the team of the OpenMP runtime torch has loaded (found among the loaded libraries, called
 * through the GOMP_parallel entry point that libgomp, LLVM's libomp and Intel's libiomp5 all provide): the threads
 * that spin on the cores after torch's own parallel work (e.g. gathering the batch) are the ones that take the
 * step's work, so nothing competes for a core. Without such a runtime (or off Linux) the step runs on one thread. */

typedef void (*task_fn)(void *ctx, int tid, int nt);

static void (*omp_parallel)(void (*)(void *), void *, unsigned, unsigned);
static int (*omp_thread_num)(void), (*omp_num_threads)(void);
static int omp_looked_up;
__attribute__((unused)) static char omp_path[4096]; /* the runtime's library, once found */

#if defined(__linux__)
/* dl_iterate_phdr's callback: the path of the first OpenMP runtime loaded, and of the first one in torch's folder
 * (other packages, e.g. scikit-learn, may bring a copy of their own) */
typedef struct {
    char any[4096], torch[4096];
} omp_paths_t;

static int find_omp(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    omp_paths_t *paths = data;
    const char *name = info->dlpi_name, *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (strlen(name) >= sizeof paths->any
        || (strncmp(base, "libgomp", 7) && strncmp(base, "libomp", 6) && strncmp(base, "libiomp", 7)))
        return 0;
    if (!paths->any[0])
        strcpy(paths->any, name);
    if (!paths->torch[0] && strstr(name, "/torch/"))
        strcpy(paths->torch, name);
    return 0;
}

/* the runtime's entry points from the loaded library at path; 1 on success */
static int bind_omp(const char *path)
{
    void *lib = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
    if (!lib)
        return 0;
    void *par = dlsym(lib, "GOMP_parallel"), *tid = dlsym(lib, "omp_get_thread_num"),
         *num = dlsym(lib, "omp_get_num_threads");
    if (!par || !tid || !num) {
        dlclose(lib);
        return 0;
    }
    /* the handle is kept: the runtime stays loaded with torch anyway */
    memcpy(&omp_parallel, &par, sizeof par);
    memcpy(&omp_thread_num, &tid, sizeof tid);
    memcpy(&omp_num_threads, &num, sizeof num);
    strcpy(omp_path, path); /* shorter than omp_paths_t's fields */
    return 1;
}
#endif

/* whether the OpenMP runtime was found (looked up once, under the GIL): torch's, else the first one loaded */
static int omp_found(void)
{
    if (!omp_looked_up) {
#if defined(__linux__)
        omp_paths_t paths = {{0}, {0}};
        dl_iterate_phdr(find_omp, &paths);
        if (!(paths.torch[0] && bind_omp(paths.torch)) && paths.any[0])
            bind_omp(paths.any);
#endif
        omp_looked_up = 1;
    }
    return omp_parallel != NULL;
}

typedef struct {
    task_fn fn;
    void *ctx;
} team_job_t;

static void team_trampoline(void *arg)
{
    team_job_t *job = arg;
    job->fn(job->ctx, omp_thread_num(), omp_num_threads());
}

/* fn(ctx, tid, nt) on a team of (at most) nt threads; returns when all are done. Call without the GIL, after
 * omp_found(). */
static void team_run(task_fn fn, void *ctx, int nt)
{
    if (nt <= 1 || !omp_parallel) {
        fn(ctx, 0, 1);
        return;
    }
    team_job_t job = {fn, ctx};
    omp_parallel(team_trampoline, &job, (unsigned)nt, 0);
}

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif
#define BARRIER_SPINS 2048 /* spins at a barrier before each yield of the core */

typedef struct {
    atomic_int count, sense;
} barrier_t;

/* a sense-reversing barrier of the team's n threads; *local: the thread's own sense, starting at 0 */
__attribute__((unused)) static void barrier_wait(barrier_t *b, int *local, int n)
{
    *local = !*local;
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == n - 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_store_explicit(&b->sense, *local, memory_order_release);
        return;
    }
    for (int spins = 0; atomic_load_explicit(&b->sense, memory_order_acquire) != *local;)
        if (++spins % BARRIER_SPINS)
            CPU_RELAX();
        else
            sched_yield();
}

#endif
