// Internal: which sanitizer this translation unit is built with.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define VMS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VMS_TSAN 1
#endif
#endif
