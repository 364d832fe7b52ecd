// Clang thread-safety analysis attributes (no-ops on other compilers). The clang build uses
// -Wthread-safety, so locks and the data they guard are checked at compile time.
#pragma once

#if defined(__clang__)
#define VMS_TSA(x) __attribute__((x))
#else
#define VMS_TSA(x)
#endif

#define VMS_CAPABILITY(x) VMS_TSA(capability(x))
#define VMS_SCOPED_CAPABILITY VMS_TSA(scoped_lockable)
#define VMS_GUARDED_BY(x) VMS_TSA(guarded_by(x))
#define VMS_PT_GUARDED_BY(x) VMS_TSA(pt_guarded_by(x))
#define VMS_REQUIRES(...) VMS_TSA(requires_capability(__VA_ARGS__))
#define VMS_EXCLUDES(...) VMS_TSA(locks_excluded(__VA_ARGS__))
#define VMS_ACQUIRE(...) VMS_TSA(acquire_capability(__VA_ARGS__))
#define VMS_TRY_ACQUIRE(...) VMS_TSA(try_acquire_capability(__VA_ARGS__))
#define VMS_RELEASE(...) VMS_TSA(release_capability(__VA_ARGS__))
#define VMS_RETURN_CAPABILITY(x) VMS_TSA(lock_returned(x))
#define VMS_NO_THREAD_SAFETY_ANALYSIS VMS_TSA(no_thread_safety_analysis)
