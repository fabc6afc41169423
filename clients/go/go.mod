module github.com/paliad/tether/clients/go

go 1.19
