//! Resource runners: Cmdline, OCF and virtual-IP resources as child processes.
