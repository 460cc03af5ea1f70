from secpolicy.cli.main import main

main()
