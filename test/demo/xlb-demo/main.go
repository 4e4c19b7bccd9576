// Command xlb-demo is `sudo make demo`: xlb's main job end to end on a lab
// in network namespaces, with the real xlbd and xlbctl. See package demo.
//
// It exits 0 when every step showed what it should, 1 when one did not,
// 130 when interrupted; in every case everything it created is removed.
package main

import "github.com/xlb-lb/xlb/test/demo"

func main() { demo.Main("xlb-demo", demo.Run, true) }
