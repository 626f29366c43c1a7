//! Library target of the kernel-program crate; it exists so that `refwatch`
//! can name this package as a build dependency. The programs are in `main.rs`.
#![no_std]
