// Internal: which sanitizer this translation unit is built with.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define VMS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VMS_TSAN 1
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define VMS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VMS_ASAN 1
#endif
#endif
