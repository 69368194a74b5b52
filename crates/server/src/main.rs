//! The Switchyard server.

fn main() {
    println!("switchyard: not yet");
}
