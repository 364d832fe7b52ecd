// Clang thread-safety analysis attributes (no-ops on other compilers). The clang build uses
// -Wthread-safety, so locks and the data they guard are checked at compile time.
#pragma once

#if defined(__clang__)
#define VMS_TSA(x) __attribute__((x))
#else
// Expands to the clang attribute `x` under clang and to nothing elsewhere.
#define VMS_TSA(x)
#endif

// Marks a class as a lock (a capability named `x` in the analysis' messages).
#define VMS_CAPABILITY(x) VMS_TSA(capability(x))
// Marks an RAII class that acquires a lock in its constructor and releases it in its destructor.
#define VMS_SCOPED_CAPABILITY VMS_TSA(scoped_lockable)
// The data member may only be accessed while holding lock `x`.
#define VMS_GUARDED_BY(x) VMS_TSA(guarded_by(x))
// The data the pointer member points to may only be accessed while holding lock `x`.
#define VMS_PT_GUARDED_BY(x) VMS_TSA(pt_guarded_by(x))
// The function may only be called while holding the given locks.
#define VMS_REQUIRES(...) VMS_TSA(requires_capability(__VA_ARGS__))
// The function must not be called while holding the given locks (it takes them itself).
#define VMS_EXCLUDES(...) VMS_TSA(locks_excluded(__VA_ARGS__))
// The function acquires the given locks (the object itself when none are named).
#define VMS_ACQUIRE(...) VMS_TSA(acquire_capability(__VA_ARGS__))
// The function tries to acquire the locks; the first argument is the return value meaning success.
#define VMS_TRY_ACQUIRE(...) VMS_TSA(try_acquire_capability(__VA_ARGS__))
// The function releases the given locks (the object itself when none are named).
#define VMS_RELEASE(...) VMS_TSA(release_capability(__VA_ARGS__))
// The function returns a reference to lock `x`.
#define VMS_RETURN_CAPABILITY(x) VMS_TSA(lock_returned(x))
// Turns the analysis off for one function (for code it cannot follow; say why at the use).
#define VMS_NO_THREAD_SAFETY_ANALYSIS VMS_TSA(no_thread_safety_analysis)
