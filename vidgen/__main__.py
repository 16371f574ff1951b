from vidgen.cli import main

main()
