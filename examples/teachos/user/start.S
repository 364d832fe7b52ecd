# start.S: the two places where C cannot be used.
#
# _start: the kernel (teachos or Linux) enters here with sp pointing at the Linux-style initial
# stack: argc, then argv[0..argc-1], NULL, then envp[...], NULL, then the auxiliary vector.
# There is no return address: _start calls ulib_start, which never returns.

        .section .text
        .globl _start
_start:
        # gp is the linker's global pointer for gp-relative addressing; it must be set before
        # any C code runs, and the instruction that sets it must not itself be relaxed to use gp.
        .option push
        .option norelax
        la      gp, __global_pointer$
        .option pop
        ld      a0, 0(sp)               # argc
        addi    a1, sp, 8               # argv
        slli    a2, a0, 3
        add     a2, a2, a1
        addi    a2, a2, 8               # envp = argv + argc + 1
        andi    sp, sp, -16             # the RISC-V ABI wants a 16-byte aligned sp
        call    ulib_start
1:      j       1b

# long ulib_clone_thread(flags, stack_top, parent_tid, tls, child_tid, fn, arg)
# The new thread starts on a different stack, so it cannot return into the C code that called
# clone: fn and arg travel on the new stack, and the child calls fn(arg) and then exit(result)
# (SYS_exit ends only the calling thread). The parent gets the child's tid (or -errno) in a0.
        .globl ulib_clone_thread
ulib_clone_thread:
        addi    a1, a1, -16
        sd      a5, 0(a1)               # fn
        sd      a6, 8(a1)               # arg
        li      a7, 220                 # SYS_clone
        ecall
        beqz    a0, 2f
        ret                             # parent (or error)
2:      ld      t0, 0(sp)               # child: sp is now the new stack
        ld      a0, 8(sp)
        addi    sp, sp, 16
        jalr    t0
        li      a7, 93                  # SYS_exit: this thread only
        ecall
3:      j       3b
