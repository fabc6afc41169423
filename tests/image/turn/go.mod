module tether-image-test/turn

go 1.19

require github.com/paliad/tether/clients/go v0.0.0

replace github.com/paliad/tether/clients/go => ../../../clients/go
