from koble.cli.main import main

main()
