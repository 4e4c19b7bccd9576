// Command xlb-demo-ha is `sudo make demo-ha`: xlb's high availability end
// to end on a lab in network namespaces: three real xlbd nodes announcing
// a VIP over BGP to a router running BIRD 2, a node lost mid-stream, and a
// kill -9 and restart of one xlbd under load. See demo.RunHA.
//
// It exits 0 when every step showed what it should, 1 when one did not
// (or BIRD is not installed), 130 when interrupted; in every case
// everything it created is removed.
package main

import "github.com/xlb-lb/xlb/test/demo"

func main() { demo.Main("xlb-demo-ha", demo.RunHA, false) }
