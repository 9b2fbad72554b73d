mod crdgen;
fn main() -> anyhow::Result<()> {
    crdgen::run(std::path::Path::new("."), false)
}
