fn main() {
    for a in std::env::args().skip(1) {
        match vdrill::scenario::load(std::path::Path::new(&a)) {
            Ok(f) => println!("{} ok: {} cells", a, f.cells.len()),
            Err(d) => d.iter().for_each(|d| println!("{d}")),
        }
    }
}
