from streammood.cli import main

main()
