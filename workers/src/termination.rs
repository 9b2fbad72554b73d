//! The container's termination message: a worker's JSON summary, which the operator reads
//! from the Pod's status (`containerStatuses[].state.terminated.message`).

/// Where the kubelet mounts the termination-message file by default.
const DEFAULT_PATH: &str = "/dev/termination-log";
/// The kubelet keeps 4 KiB of the message; a summary is small and an error is cut to fit.
const MAX_BYTES: usize = 4000;

/// Write `text` as the termination message. The file is there only inside a container
/// (outside one nothing is written); `TERMINATION_MESSAGE_PATH` names it where the Pod is
/// run other than by a kubelet (the test tier's local runner).
pub fn write(text: &str) {
    let path = std::env::var_os("TERMINATION_MESSAGE_PATH")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| DEFAULT_PATH.into());
    if path.exists() {
        let mut end = text.len().min(MAX_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let _ = std::fs::write(&path, &text.as_bytes()[..end]);
    }
}
